"""Builds `processors/tiny/`: the byte-level BPE tokenizer and image processor of the tiny preset.

The tokenizer is trained on a short list of radiology words written here, so the tiny text model reads report
language in few tokens; being byte-level, it still encodes any text. Run from the repository root:

    python processors/build_tiny_tokenizer.py
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, ViTImageProcessorPil

from modeling_gaze2report.processing_gaze2report import Gaze2ReportProcessor

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<gaze>"]
VOCAB_SIZE = 1024
IMAGE_SIZE = 64

RADIOLOGY_WORDS = """
findings impression the heart is normal in size mildly moderately severely enlarged cardiomegaly cardiac silhouette
mediastinal contours are within normal limits unremarkable widened mediastinum lungs are clear no focal
consolidation opacity opacities airspace disease pleural effusion effusions small moderate large left right
bilateral pneumothorax apical lateral rim pleural line nodule mass measuring cm centimeter upper middle lower lobe
lingula base bases atelectasis linear plate-like subsegmental pulmonary edema vascular congestion interstitial
markings hazy perihilar support devices endotracheal tube tip terminates above the carina central venous catheter
line nasogastric tube courses below the diaphragm pacemaker leads rib fracture fractures acute displaced healing
osseous structures intact no acute cardiopulmonary process stable unchanged compared with prior there is are seen
evidence of without with may represent cannot be excluded possible likely consistent suggest concerning for
resolved improved worsened new increased decreased blunting costophrenic angle angles meniscus hemidiaphragm
trachea midline aorta tortuous calcified spine thoracic degenerative changes chest radiograph pa ap lateral view
frontal portable semi-upright
"""


def build(output_dir: Path) -> None:
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    sentences = RADIOLOGY_WORDS.split("\n")
    tokenizer.train_from_iterator(sentences + [s.capitalize() + "." for s in sentences], trainer=trainer)
    fast_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<gaze>"],
        model_max_length=512,
    )
    image_processor = ViTImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = Gaze2ReportProcessor(image_processor=image_processor, tokenizer=fast_tokenizer, num_gaze_tokens=32)
    # A preset is read with the installed package, so it carries no remote-code copies of the processor.
    Gaze2ReportProcessor._auto_class = None
    processor.save_pretrained(output_dir)


if __name__ == "__main__":
    build(Path(__file__).resolve().parent / "tiny")
