"""A rule-based, offline CheXpert-style report labeler.

It follows the stages of the Stanford CheXpert labeler (mention extraction, negation and uncertainty classification,
aggregation) with regular expressions in place of its dependency parses:

1. The report is lowercased and split into sentences (at `.`, `?`, `!` and line breaks, never inside a decimal
   number such as `1.5`). List numbers such as `1.` become empty fragments.
2. Mentions of each observation are found with the phrase lists below, longest phrase first, never overlapping,
   never inside an excluded phrase ("pericardial effusion" is not a pleural effusion).
3. Each mention is classified inside its clause (the part of the sentence between scope breakers such as "but",
   "however", "although", "except", "there is", ";"), in this order, which is the CheXpert order:
   uncertainty phrases that contain a negation ("cannot be excluded", "cannot exclude") -> -1; negation before the
   mention ("no", "without", "no evidence of", "negative for", "free of", "resolved", "clear of", "rather than",
   "no new"...) or after it ("has resolved", "is not seen"...) -> 0; uncertainty before it ("may represent",
   "possible", "likely", "suggest", "questionable", "concern for"...), after it ("is possible"), or two mentions
   joined by "or" / "versus" -> -1; otherwise 1. "No change in", "unchanged" and "stable" keep a finding positive.
4. Heart-size and mediastinal-contour phrases ("heart size", "cardiac silhouette", "mediastinum"...) are mentions only
   when their phrase says normal (0), enlarged or widened (1, or -1 if hedged) or borderline (-1).
5. Several mentions of one observation aggregate as in CheXpert: 1 beats -1 beats 0; an observation never mentioned
   is None (the blank of the CheXpert CSV). A positive or uncertain "CHF" / "heart failure" also adds an uncertain
   Cardiomegaly mention (the CheXpert exception).
6. "No Finding" is 1 when no observation other than Support Devices, and none of the other abnormal findings CheXpert
   lists for this rule (emphysema, hyperinflation, granuloma, calcification, scoliosis...), is 1 or -1; otherwise it
   is None. It is never 0, as in the reference labeler's output.

"Lungs are clear" is not a mention of anything (the reference labeler leaves Lung Opacity blank for it).
"""

import re

from .observations import CHEXPERT_OBSERVATIONS

LABELER_VERSION = "gaze2report rule-based CheXpert-style v1"

POSITIVE, UNCERTAIN, NEGATIVE = 1, -1, 0
_PRIORITY = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}

# Plain mentions: a match is a mention of every observation listed with it.
_MENTION_PHRASES = {
    ("Enlarged Cardiomediastinum",): [
        r"enlarged cardiomediastinum",
        r"(?:cardio)?mediastinal (?:widening|enlargement)",
        r"widen(?:ed|ing) (?:of the )?(?:cardio)?mediastin(?:um|al (?:silhouette|contours?))",
        r"enlarge(?:d|ment of the) (?:cardio)?mediastin(?:um|al (?:silhouette|contours?))",
    ],
    ("Cardiomegaly",): [
        r"cardiomegaly",
        r"cardiac enlargement",
        r"enlarge(?:d|ment of the) (?:heart|cardiac (?:silhouette|contours?|shadow))",
    ],
    ("Lung Lesion",): [
        r"mass(?:es)?",
        r"nodules?",
        r"nodular",
        r"lesions?",
        r"neoplasms?",
        r"tumou?rs?",
        r"carcinoma",
    ],
    ("Lung Opacity",): [
        r"opacit(?:y|ies)",
        r"opacification",
        r"opacified",
        r"infiltrat(?:e|es|ion|ive)",
        r"air[- ]?space (?:disease|process)",
        r"increased density",
        r"haziness",
        r"interstitial (?:markings?|pattern|prominence)",
        r"reticular (?:markings?|pattern)",
        r"reticulation",
        r"scarring",
    ],
    ("Edema",): [
        r"(?:pulmonary |interstitial |alveolar )?edema",
        r"(?:congestive )?heart failure",
        r"chf",
        r"(?:pulmonary )?vascular congestion",
        r"pulmonary congestion",
        r"pulmonary vascular (?:prominence|engorgement)",
    ],
    ("Consolidation",): [r"consolidat(?:ion|ions|ive|ed)"],
    ("Pneumonia",): [r"(?:broncho)?pneumonias?", r"infection", r"infectious process"],
    ("Atelectasis",): [r"atelecta(?:sis|ses|tic)", r"collapsed?"],
    ("Pneumothorax",): [r"pneumothora(?:x|ces)", r"ptx"],
    ("Pneumothorax", "Pleural Effusion"): [r"hydropneumothora(?:x|ces)"],
    ("Pleural Effusion",): [r"(?:pleural )?effusions?", r"pleural fluid", r"hydrothorax"],
    ("Pleural Other",): [
        r"pleural (?:thickening|plaques?|scarring|calcifications?|fibrosis)",
        r"fibrothorax",
        r"pleural abnormalit(?:y|ies)",
    ],
    ("Fracture",): [r"fractures?", r"fractured"],
    ("Support Devices",): [
        r"(?:endotracheal|et|nasogastric|ng|orogastric|og|enteric|feeding|chest|tracheostomy|dobhoff|gastric) tubes?",
        r"tubes?",
        r"(?:central venous|central|picc|midline|venous|arterial|dialysis|internal jugular|ij|subclavian) lines?",
        r"catheters?",
        r"picc",
        r"pacemaker",
        r"pacer",
        r"(?:aicd|icd|pacemaker|pacer) (?:leads?|wires?|device|generator)",
        r"aicd",
        r"defibrillator",
        r"(?:sternotomy )?wires?",
        r"leads?",
        r"(?:surgical )?clips?",
        r"stents?",
        r"drains?",
        r"(?:prosthetic|mechanical) valves?",
        r"valve replacement",
        r"port-?a-?cath",
        r"ports?",
        r"coils?",
        r"swan[- ]ganz",
        r"hardware",
        r"devices?",
    ],
}

# Contour phrases: mentions only when their phrase says normal, enlarged or borderline (step 4 of the module doc).
_CONTOUR_PHRASES = {
    "Enlarged Cardiomediastinum": [
        r"cardiomediastinal (?:silhouette|contours?|size)",
        r"mediastinal (?:and hilar )?(?:silhouette|contours?)",
        r"(?:cardio)?mediastinum",
    ],
    "Cardiomegaly": [
        r"heart size",
        r"cardiac (?:size|silhouette|contours?|shadow)",
        r"heart",
    ],
}

# Abnormal findings outside the 14 whose positive or uncertain mention rules out "No Finding" (CheXpert's list).
_OTHER_FINDING_PHRASES = [
    r"emphysema(?:tous)?",
    r"hyperinflat(?:ion|ed)",
    r"hyperexpan(?:sion|ded)",
    r"granulomas?",
    r"calcifi(?:ed|cation|cations)",
    r"scoliosis",
    r"kyphosis",
    r"hernia",
    r"copd",
    r"bullae",
    r"pneumomediastinum",
    r"pneumoperitoneum",
    r"blunting",
    r"volume loss",
    r"deformity",
    r"hematoma",
    r"bronchiectasis",
    r"fibrosis",
    r"aspiration",
    r"cephalization",
    r"peribronchial cuffing",
    r"osteopenia",
    r"metasta(?:sis|ses|tic)",
    r"atherosclero(?:sis|tic)",
    r"degenerative",
    r"elevat(?:ed|ion of the) (?:left |right )?hemidiaphragm",
    r"tortuous aorta",
]

# Phrases that contain a mention but are not one (CheXpert's "unmention" lists).
_EXCLUDED_PHRASES = [
    r"pericardial effusions?",
    r"joint effusions?",
    r"line of",
    r"lead to",
]

# Phrases whose negation word negates nothing ("no change in the effusion" keeps the effusion positive).
_NEUTRAL_PHRASES = [
    r"no (?:significant |substantial |interval |appreciable )?change",
    r"not (?:significantly )?changed",
    r"without (?:significant |interval )?change",
]

_SCOPE_BREAKERS = (
    r"\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bwhereas\b|\bexcept\b|\baside from\b|"
    r"\bapart from\b|\bwith the exception of\b|\bthere (?:is|are)\b|\bwhich\b|;|:"
)

_UNCERTAIN_NEGATED_BEFORE = (
    r"\bcan ?not (?:be )?(?:entirely |completely )?(?:exclude[d]?|rule[d]? out)\b|"
    r"\bdifficult to (?:exclude|rule out)\b|\bnot (?:be )?(?:entirely |completely )?(?:excluded|ruled out)\b"
)
_UNCERTAIN_NEGATED_AFTER = (
    r"\b(?:can ?not|could not|may not) be (?:entirely |completely )?(?:excluded|ruled out)\b|"
    r"\b(?:is|are) not (?:entirely |completely )?(?:excluded|ruled out)\b"
)
_NEGATION_BEFORE = (
    r"\bno\b|\bnot\b|\bwithout\b|\bnegative for\b|\bfree of\b|\bclear of\b|\brather than\b|"
    r"\babsence of\b|\bresolution of\b|\bresolved\b|\bremoval of\b|\bremoved\b|\bnor\b|\bfails? to (?:show|reveal)\b|"
    r"\bruled out\b"
)
_NEGATION_AFTER = (
    r"\b(?:is|are|was|were|has|have)\s+(?:been\s+)?(?:not\s+(?:seen|identified|present|appreciated|"
    r"visualized|evident|demonstrated|noted)|absent|resolved|removed|cleared|no longer (?:seen|present|visible))\b|"
    r"\bresolved\b|\bremoved\b|\bno longer (?:seen|present|visible)\b"
)
_UNCERTAIN_BEFORE = (
    r"\bmay\b|\bmight\b|\bcould\b|\bpossibl[ey]\b|\bprobabl[ey]\b|\blikely\b|\bsuggest\w*\b|"
    r"\bsuspicious\b|\bsuspect\w*\b|\bquestionable\b|\bquestion of\b|\bconcern\w*\b|\bversus\b|\bvs\b|"
    r"\bdifferential\b|\bconsider\w*\b|\bborderline\b|\bpresumed\b|\bequivocal\b|\bindeterminate\b|"
    r"\bpossibility of\b"
)
_UNCERTAIN_AFTER = (
    r"\b(?:is|are) (?:possible|likely|possibly present|likely present|suspected|questioned|"
    r"a consideration)\s*$|\bmay be present\s*$"
)
_ALTERNATIVE_BETWEEN = r"^\s*,?\s*(?:and/)?(?:or|versus|vs\.?)\s+(?:[a-z-]+\s+){0,2}$"
_LIST_BETWEEN = (
    r"^\s*,?\s*(?:and|or)?\s*(?:(?:left|right|bilateral|small|large|mild|moderate|severe|minimal|"
    r"trace|tiny|basilar|apical)\s+)*$"
)

_CONTOUR_NORMAL = r"\bnormal\b|\bunremarkable\b|\bwithin normal limits\b|\bnot (?:\w+ )?(?:enlarged|widened)\b"
_CONTOUR_BORDERLINE = r"\bborderline\b|\btop[- ]normal\b|\bupper limits? of normal\b"
_CONTOUR_ENLARGED = r"\benlarge(?:d|ment)\b|\blarge\b|\bwidened\b|\bwidening\b|\bincreased\b|\bprominent\b"
_CONTOUR_PHRASE_BREAKERS = r",|\band\b|\bwith\b|\bwhile\b"

_SIDE_WORDS = r"\b(?:left|right|bilateral(?:ly)?|both|bibasilar|bibasal|biapical)\b"
_BILATERAL_PAIR = r"\b(?:left and right|right and left)\b"


def _compile(phrases):
    return re.compile("|".join(rf"\b(?:{phrase})\b" for phrase in phrases))


_MENTION_PATTERNS = [(observations, _compile(phrases)) for observations, phrases in _MENTION_PHRASES.items()]
_CONTOUR_PATTERNS = [((observation,), _compile(phrases)) for observation, phrases in _CONTOUR_PHRASES.items()]
_OTHER_FINDING_PATTERN = _compile(_OTHER_FINDING_PHRASES)
_EXCLUDED_PATTERN = _compile(_EXCLUDED_PHRASES)
_NEUTRAL_PATTERN = _compile(_NEUTRAL_PHRASES)
_SENTENCE_BREAK = re.compile(r"(?<!\d)\.|\.(?!\d)|[?!\n]")


class _Mention:
    def __init__(self, observations, start, end, text, is_contour):
        self.observations = observations  # tuple of observation names, or () for an "other finding"
        self.start = start
        self.end = end
        self.text = text
        self.is_contour = is_contour
        self.label = None
        self.side = None


def _split_sentences(report):
    """Lowercased sentences, with neutral phrases blanked out (same length, so positions stay valid)."""
    text = _NEUTRAL_PATTERN.sub(lambda match: " " * len(match.group()), report.lower())
    return [sentence.strip() for sentence in _SENTENCE_BREAK.split(text) if sentence.strip()]


def report_sentences(report):
    """The report's sentences as written (case kept, each with its closing punctuation), split where the labeler
    splits them (`.`, `?`, `!`, line breaks, never inside a decimal number); empty fragments are left out."""
    _check_reports([report])
    sentences, start = [], 0
    for match in _SENTENCE_BREAK.finditer(report):
        sentences.append(report[start : match.end()].strip())
        start = match.end()
    sentences.append(report[start:].strip())
    return [sentence for sentence in sentences if sentence.strip(" .?!")]


def _clause_bounds(sentence, position):
    """Start and end of the clause around character `position` (between scope breakers)."""
    start, end = 0, len(sentence)
    for breaker in re.finditer(_SCOPE_BREAKERS, sentence):
        if breaker.end() <= position:
            start = breaker.end()
        elif breaker.start() >= position:
            end = breaker.start()
            break
    return start, end


def _find_mentions(sentence):
    excluded_spans = [match.span() for match in _EXCLUDED_PATTERN.finditer(sentence)]
    candidates = []
    for observations, pattern in _MENTION_PATTERNS:
        candidates += [(match, observations, False) for match in pattern.finditer(sentence)]
    for observations, pattern in _CONTOUR_PATTERNS:
        candidates += [(match, observations, True) for match in pattern.finditer(sentence)]
    candidates += [(match, (), False) for match in _OTHER_FINDING_PATTERN.finditer(sentence)]
    candidates.sort(key=lambda candidate: (candidate[0].start(), -(candidate[0].end() - candidate[0].start())))
    mentions, taken_until = [], -1
    for match, observations, is_contour in candidates:
        start, end = match.span()
        inside_excluded = any(ex_start <= start and end <= ex_end for ex_start, ex_end in excluded_spans)
        if start < taken_until or inside_excluded:
            continue
        mentions.append(_Mention(observations, start, end, match.group(), is_contour))
        taken_until = end
    return mentions


def _contour_label(sentence, mention):
    """Label of a heart-size / mediastinal-contour phrase from the words of its own phrase, None if it says nothing."""
    clause_start, clause_end = _clause_bounds(sentence, mention.start)
    phrase_start, phrase_end = clause_start, clause_end
    for breaker in re.finditer(_CONTOUR_PHRASE_BREAKERS, sentence[clause_start:clause_end]):
        if clause_start + breaker.end() <= mention.start:
            phrase_start = clause_start + breaker.end()
        elif clause_start + breaker.start() >= mention.end:
            phrase_end = clause_start + breaker.start()
            break
    phrase = sentence[phrase_start:phrase_end]
    if re.search(_CONTOUR_BORDERLINE, phrase):
        return UNCERTAIN
    if re.search(_CONTOUR_NORMAL, phrase):
        return NEGATIVE
    if re.search(_CONTOUR_ENLARGED, phrase):
        return UNCERTAIN if re.search(_UNCERTAIN_BEFORE, phrase) else POSITIVE
    return None


def _classify_sentence(sentence, mentions):
    """Sets `label` on every mention of one sentence; contour phrases that say nothing are removed."""
    cue_windows = []
    for index, mention in enumerate(mentions):
        clause_start, clause_end = _clause_bounds(sentence, mention.start)
        next_start = mentions[index + 1].start if index + 1 < len(mentions) else clause_end
        cue_windows.append(
            (sentence[clause_start : mention.start], sentence[mention.end : min(next_start, clause_end)])
        )

    # Post-mention cues of a list's last item apply to the items before it ("effusion and edema have resolved").
    negated_after = [bool(re.search(_NEGATION_AFTER, after)) for _, after in cue_windows]
    uncertain_after = [bool(re.search(_UNCERTAIN_AFTER, after)) for _, after in cue_windows]
    uncertain_negated_after = [bool(re.search(_UNCERTAIN_NEGATED_AFTER, after)) for _, after in cue_windows]
    for index in range(len(mentions) - 2, -1, -1):
        between = sentence[mentions[index].end : mentions[index + 1].start]
        if re.match(_LIST_BETWEEN, between):
            negated_after[index] |= negated_after[index + 1]
            uncertain_after[index] |= uncertain_after[index + 1]
            uncertain_negated_after[index] |= uncertain_negated_after[index + 1]

    alternative = [False] * len(mentions)
    for index in range(len(mentions) - 1):
        if re.match(_ALTERNATIVE_BETWEEN, sentence[mentions[index].end : mentions[index + 1].start]):
            alternative[index] = alternative[index + 1] = True

    for index, mention in enumerate(mentions):
        before, _ = cue_windows[index]
        if mention.is_contour:
            mention.label = _contour_label(sentence, mention)
        elif re.search(_UNCERTAIN_NEGATED_BEFORE, before) or uncertain_negated_after[index]:
            mention.label = UNCERTAIN
        elif re.search(_NEGATION_BEFORE, before) or negated_after[index]:
            mention.label = NEGATIVE
        elif re.search(_UNCERTAIN_BEFORE, before) or uncertain_after[index] or alternative[index]:
            mention.label = UNCERTAIN
        else:
            mention.label = POSITIVE
        mention.side = _mention_side(sentence, mention)
    return [mention for mention in mentions if mention.label is not None]


def _mention_side(sentence, mention):
    """The side word nearest to the mention inside its clause: "left", "right", "bilateral" or None."""
    clause_start, clause_end = _clause_bounds(sentence, mention.start)
    clause = re.sub(
        _BILATERAL_PAIR, lambda match: "bilateral".ljust(len(match.group())), sentence[clause_start:clause_end]
    )
    best_side, best_distance = None, None
    for side_match in re.finditer(_SIDE_WORDS, clause):
        side_start, side_end = clause_start + side_match.start(), clause_start + side_match.end()
        distance = mention.start - side_end if side_end <= mention.start else side_start - mention.end
        if best_distance is None or abs(distance) < best_distance:
            word = side_match.group()
            best_side = word if word in ("left", "right") else "bilateral"
            best_distance = abs(distance)
    return best_side


def _check_reports(reports):
    if isinstance(reports, str):
        raise TypeError("labeler: expected a list of report strings, got a single str; wrap it in a list")
    for index, report in enumerate(reports):
        if not isinstance(report, str):
            raise TypeError(f"labeler: report at index {index} is {type(report).__name__}, expected str")


def _labelled_mentions(report):
    mentions = []
    for sentence in _split_sentences(report):
        mentions += _classify_sentence(sentence, _find_mentions(sentence))
    return mentions


def _aggregate(mentions):
    labels_per_observation = {observation: [] for observation in CHEXPERT_OBSERVATIONS}
    no_finding = True
    for mention in mentions:
        if mention.label in (POSITIVE, UNCERTAIN):
            if (
                any(observation != "Support Devices" for observation in mention.observations)
                or not mention.observations
            ):
                no_finding = False
            if mention.text in ("chf", "heart failure", "congestive heart failure"):
                labels_per_observation["Cardiomegaly"].append(UNCERTAIN)
        for observation in mention.observations:
            labels_per_observation[observation].append(mention.label)
    labels = {
        observation: max(values, key=_PRIORITY.__getitem__) if values else None
        for observation, values in labels_per_observation.items()
    }
    labels["No Finding"] = POSITIVE if no_finding else None
    return labels


def label_reports(reports):
    """Labels free-text reports with the 14 CheXpert observations.

    Args:
        reports (`list[str]`): report texts (findings and/or impression).

    Returns:
        `list[dict[str, int | None]]`: one dict per report with the 14 keys of `CHEXPERT_OBSERVATIONS`, values 1
        (positive), 0 (negative), -1 (uncertain) or None (not mentioned).
    """
    _check_reports(reports)
    return [_aggregate(_labelled_mentions(report)) for report in reports]


def extract_laterality(report):
    """Side of each positively mentioned observation: "left", "right", "bilateral" (both sides, or left and right
    mentions of the same observation) or None (no positive mention, or no side word in its clause).

    Args:
        report (`str`): one report text.

    Returns:
        `dict[str, str | None]`: the 14 keys of `CHEXPERT_OBSERVATIONS` ("No Finding" is always None).
    """
    _check_reports([report])
    sides_per_observation = {observation: set() for observation in CHEXPERT_OBSERVATIONS}
    for mention in _labelled_mentions(report):
        if mention.label == POSITIVE and mention.side is not None:
            for observation in mention.observations:
                sides_per_observation[observation].add(mention.side)
    laterality = {}
    for observation, sides in sides_per_observation.items():
        if not sides:
            laterality[observation] = None
        elif len(sides) == 1:
            laterality[observation] = sides.pop()
        else:
            laterality[observation] = "bilateral"
    return laterality
