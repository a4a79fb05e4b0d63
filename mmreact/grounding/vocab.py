"""A closed object vocabulary with synonyms, for CHAIR-style hallucination and count checks.

The classes are mmreact's own tag list's COCO (80) and Open Images (600) sections
(``mmreact/data/tags.txt``). Surface forms (plurals, synonyms, COCO's and Open Images' names for
the same thing) map to one canonical class, so "puppies" in an answer matches "dog" in a
detection. Words too generic or too ambiguous to check ("animal", "food", "orange" the colour,
"watch" the verb, body parts that any person has) are left out of the vocabulary: an answer may
use them freely.

A mention is *negated* when a negation cue ("no", "not", "without", "n't", ...) comes at most
six words before it in the same clause ("There is no dog" asserts nothing about a dog). A number
(2-99, or "two".."twenty", "both") at most two words before a mention is its stated count.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

__all__ = ["Mention", "Vocabulary", "default_vocabulary", "tokenize"]

#: canonical class -> other surface forms (which may be vocabulary classes themselves)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("people", "man", "woman", "boy", "girl", "child", "kid", "baby", "lady", "guy", "gentleman",
               "adult", "teenager", "toddler", "player", "astronaut", "pedestrian", "rider", "skier", "surfer",
               "skateboarder", "worker", "chef", "customer", "cashier", "waiter", "waitress", "passenger",
               "soldier", "human", "individual"),
    "bicycle": ("bike",),
    "motorcycle": ("motorbike", "motor bike", "dirt bike"),
    "car": ("automobile", "sedan", "taxi", "cab", "limousine", "suv", "van", "hatchback"),
    "airplane": ("plane", "aeroplane", "jet", "airliner"),
    "bus": ("minibus",),
    "train": ("locomotive",),
    "truck": ("pickup truck", "lorry"),
    "boat": ("ship", "sailboat", "yacht", "canoe", "kayak", "barge", "gondola", "ferry", "watercraft"),
    "traffic light": ("traffic signal", "stoplight", "stop light"),
    "fire hydrant": ("hydrant",),
    "bird": ("blue jay", "canary", "eagle", "falcon", "magpie", "ostrich", "owl", "parrot", "penguin", "raven",
             "sparrow", "swan", "woodpecker", "duck", "goose", "chicken", "pigeon", "seagull", "gull", "hen",
             "rooster"),
    "cat": ("kitten", "kitty", "tabby"),
    "dog": ("puppy", "pup", "doggy", "hound"),
    "horse": ("pony", "foal", "stallion", "mare"),
    "sheep": ("lamb",),
    "cow": ("cattle", "bull", "calf", "ox"),
    "bear": ("brown bear", "polar bear", "grizzly"),
    "backpack": ("rucksack", "knapsack"),
    "umbrella": ("parasol",),
    "handbag": ("purse",),
    "suitcase": ("luggage", "baggage"),
    "frisbee": ("flying disc",),
    "skis": ("ski",),
    "sports ball": ("ball", "soccer ball"),
    "baseball glove": ("mitt",),
    "tennis racket": ("racket", "racquet"),
    "wine glass": ("wineglass",),
    "cup": ("mug", "coffee cup", "teacup"),
    "knife": ("kitchen knife",),
    "bowl": ("mixing bowl",),
    "sandwich": ("submarine sandwich",),
    "donut": ("doughnut",),
    "couch": ("sofa", "studio couch", "loveseat", "sofa bed", "settee"),
    "potted plant": ("houseplant", "flowerpot", "pot plant"),
    "dining table": ("kitchen table", "coffee table", "kitchen and dining room table"),
    "tv": ("television", "tv set"),
    "laptop": ("notebook computer",),
    "computer mouse": (),
    "remote control": (),
    "keyboard": ("computer keyboard",),
    "cell phone": ("mobile phone", "phone", "smartphone", "cellphone", "telephone", "corded phone"),
    "microwave": ("microwave oven",),
    "refrigerator": ("fridge",),
    "clock": ("wall clock", "alarm clock", "digital clock"),
    "teddy bear": ("teddy",),
    "hair drier": ("hair dryer", "hairdryer"),
    "coffee": ("espresso", "cappuccino", "latte"),
}

#: Classes of the lists that are not checked (too generic, or common words with other meanings).
EXCLUDED: frozenset[str] = frozenset("""
animal mammal food drink clothing furniture vehicle plant tool toy container dessert snack vegetable fruit
seafood kitchenware tableware cosmetics insect invertebrate reptile carnivore shellfish weapon footwear
arm beard ear eye face foot hair hand head leg mouth nose
orange watch tie bat scale nail tap tick fig squash organ bust chime crown cream tank turkey football
volleyball remote mouse table tire
""".split()) | frozenset({
    "land vehicle", "fast food", "baked goods", "dairy product", "kitchen utensil", "kitchen appliance",
    "home appliance", "office supplies", "personal care", "fashion accessory", "sports equipment",
    "hiking equipment", "bowling equipment", "medical equipment", "musical instrument", "auto part",
    "bathroom accessory", "plumbing fixture", "marine invertebrates", "marine mammal", "luggage and bags",
    "human body", "aircraft", "human face", "human hand", "moths and butterflies", "rays and skates",
})

#: Phrases that contain a class name but do not name the object ("bounding box" is not a box).
NOT_OBJECTS: tuple[str, ...] = ("bounding box", "text box", "check box", "box office")

_IRREGULAR = {"man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
              "goose": "geese", "tooth": "teeth", "foot": "feet", "ox": "oxen", "knife": "knives",
              "leaf": "leaves", "shelf": "shelves", "scarf": "scarves", "wolf": "wolves", "calf": "calves",
              "loaf": "loaves", "potato": "potatoes", "tomato": "tomatoes", "mango": "mangoes",
              "kid": "kids", "sheep": "sheep", "deer": "deer", "fish": "fish", "cattle": "cattle",
              "shrimp": "shrimp", "squid": "squid", "moose": "moose", "people": "people"}
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS["both"] = 2
NEGATIONS = frozenset("no not without none neither nor never nothing nobody nowhere lacks lacking absent".split())
CLAUSE_BREAKS = frozenset(". , ; : ! ? but while although though however whereas".split())
_SKIPPABLE_STOP = frozenset("the a an of in on at to and or pm am with for by from is are was were".split())
_TOKEN = re.compile(r"\d+(?:[.,:]\d+)*|[a-z]+(?:'[a-z]+)?|[.,;:!?$%]")


def plural(word: str) -> str:
    """English plural of the last word of ``word``."""
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR:
        p = _IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        p = last + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


def tokenize(text: str) -> list[str]:
    """Lower-case word, number and punctuation tokens; ``'s`` dropped, hyphens split words."""
    out = []
    for tok in _TOKEN.findall(text.lower().replace("-", " ").replace("\u2019", "'")):
        if tok.endswith("'s"):
            tok = tok[:-2]
        out.append(tok)
    return out


@dataclass(frozen=True, slots=True)
class Mention:
    """One object named in a text."""

    canonical: str
    surface: str
    start: int
    negated: bool
    count: int | None  # a stated number of them (2 or more), else None


class Vocabulary:
    """Surface forms -> canonical classes, and a matcher that finds them in text."""

    def __init__(self, classes: Iterable[str], synonyms: Mapping[str, Iterable[str]] = SYNONYMS,
                 excluded: Iterable[str] = EXCLUDED, not_objects: Iterable[str] = NOT_OBJECTS) -> None:
        skip = frozenset(excluded)
        self.canonical_of: dict[tuple[str, ...], str] = {}
        for phrase in not_objects:  # matched like a class, longest first, and then ignored
            self._add(phrase, "")
        member_of = {m: canon for canon, members in synonyms.items() for m in members}
        for cls in classes:
            if cls in skip:
                continue
            self._add(cls, member_of.get(cls, cls))
        for canon, members in synonyms.items():
            if canon in skip:
                continue
            self._add(canon, canon)
            for m in members:
                if m not in skip:
                    self._add(m, canon)
        self.classes = frozenset(c for c in self.canonical_of.values() if c)
        self.longest = max((len(k) for k in self.canonical_of), default=1)

    def _add(self, form: str, canon: str) -> None:
        for f in (form, plural(form)):
            key = tuple(tokenize(f))
            if key:
                self.canonical_of.setdefault(key, canon)

    def canonical(self, label: str) -> str | None:
        """The class a whole label names (e.g. a detection's ``"dining table"``), else ``None``."""
        return self.canonical_of.get(tuple(tokenize(label))) or None

    def mentions(self, text: str) -> list[Mention]:
        tokens = tokenize(text)
        found: list[Mention] = []
        i = 0
        while i < len(tokens):
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                canon = self.canonical_of.get(tuple(tokens[i:i + n]))
                if canon is not None:
                    if canon:
                        found.append(Mention(canon, " ".join(tokens[i:i + n]), i, _negated(tokens, i),
                                             _count(tokens, i)))
                    i += n
                    break
            else:
                i += 1
        return found

    def classes_in(self, text: str) -> set[str]:
        """Every class named in ``text``, negated or not (what a context contains)."""
        return {m.canonical for m in self.mentions(text)}


def _negated(tokens: list[str], start: int) -> bool:
    for j in range(start - 1, max(-1, start - 7), -1):
        tok = tokens[j]
        if tok in CLAUSE_BREAKS:
            return False
        if tok in NEGATIONS or tok.endswith("n't"):
            return True
    return False


def _number(tok: str) -> int | None:
    if tok in NUMBER_WORDS:
        return NUMBER_WORDS[tok]
    return int(tok) if tok.isdigit() and len(tok) <= 2 else None


def _count(tokens: list[str], start: int) -> int | None:
    skipped = 0
    for j in range(start - 1, max(-1, start - 4), -1):
        n = _number(tokens[j])
        if n is not None:
            if j > 0 and tokens[j - 1] in ("$", "."):  # "$2 coffee", "3.5 cups" are not counts
                return None
            return n if n >= 2 else None
        if not tokens[j].isalpha() or tokens[j] in _SKIPPABLE_STOP or skipped == 2:
            return None
        skipped += 1
    return None


def _tag_sections() -> list[str]:
    """The COCO and Open Images sections of mmreact's tag list."""
    text = resources.files("mmreact").joinpath("data/tags.txt").read_text(encoding="utf-8")
    out: list[str] = []
    keep = False
    for line in text.splitlines():
        if line.startswith("#"):
            keep = line.lower().startswith(("# coco", "# open images"))
            continue
        if keep and line.strip():
            out.append(line.strip())
    return out


@functools.lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """COCO + Open Images classes from ``mmreact/data/tags.txt``, with :data:`SYNONYMS`."""
    return Vocabulary(_tag_sections())
