"""The text the tiny model's tokenizer is trained on: a built-in word list and seeded sentences.

It only has to give byte-level BPE enough distinct words to learn a full vocabulary (2030
tokens below the special ones), in the kind of language the project's prompts and captions use.
Changing anything here changes the tiny model's tokenizer (and so every test expectation made
with it): treat it as frozen.
"""
from __future__ import annotations

import random

NOUNS = """
person man woman child boy girl people crowd worker driver cyclist runner officer guard visitor
customer family couple baby student teacher player team dog cat bird horse cow sheep deer fox
car truck bus van bicycle motorcycle scooter train tram boat ship airplane helicopter drone
tractor trailer taxi ambulance forklift cart wagon vehicle road street highway lane crossing
intersection sidewalk pavement parking garage driveway bridge tunnel gate fence wall door window
roof building house shop store office factory warehouse station platform airport harbor dock
park garden field forest tree bush grass flower river lake pond sea beach sand hill mountain
rock stone snow rain fog cloud sky sun moon light shadow lamp sign signal camera screen
table chair bench desk shelf box package bag suitcase backpack bottle cup phone laptop
computer keyboard book paper ball toy umbrella hat jacket coat shirt helmet glove shoe
kitchen corridor hallway room entrance exit stairs elevator lobby counter checkout aisle
yard porch balcony pool court track stadium playground market square corner edge center
left right front back top bottom side middle distance background foreground scene view frame
video image picture clip moment second minute hour morning afternoon evening night day
time number color shape line circle square triangle pattern texture surface object thing
animal machine tool item area region zone space place location point direction movement
motion action event activity incident accident alarm fire smoke water ice dust wind
noise sound voice question answer description caption summary report alert warning
message system assistant user model token prompt text word sentence story detail
""".split()

ADJECTIVES = """
red green blue yellow orange purple pink brown black white gray grey dark bright light
small large big tiny huge long short tall low high wide narrow thick thin heavy empty full
open closed busy quiet calm slow fast quick sudden steady still moving parked stopped
old new young modern wooden metal plastic glass concrete wet dry cold warm hot clear cloudy
sunny rainy snowy foggy windy blurry sharp visible hidden distant nearby close far
several many few some most other same different single double main second first last next
previous early late unusual normal strange suspicious safe dangerous careful careless
helpful important possible likely certain clear noisy crowded deserted lit shaded striped
round square flat curved straight diagonal vertical horizontal upper lower inner outer
""".split()

VERBS = """
walks runs drives rides stands sits waits moves stops starts turns enters leaves crosses
passes follows carries holds opens closes pushes pulls lifts drops throws catches picks
looks watches points waves talks speaks calls shouts laughs smiles jumps climbs falls
slides rolls spins flies lands parks reverses accelerates slows appears disappears remains
arrives departs approaches returns gathers meets leans kneels lies sleeps eats drinks
reads writes types plays works cleans sweeps paints builds repairs checks inspects
delivers loads unloads stacks sorts counts shows displays flashes blinks glows shines
changes grows fills empties covers blocks reaches touches hits breaks shakes swings
walked ran drove rode stood sat waited moved stopped started turned entered left crossed
walking running driving riding standing sitting waiting moving stopping turning entering
leaving crossing carrying holding opening closing looking watching talking playing working
is are was were be been being has have had do does did can could will would should may might
describe describes described happen happens happened show see seen seem seems appear
""".split()

FUNCTION_WORDS = """
the a an this that these those there here it its he she they them their his her we you your
and or but so because while when where what which who whom whose why how if then than as
of in on at to from into onto over under above below behind between among through across
along around toward towards near by with without within during before after until since
up down out off about again also only just very quite rather too not no yes all each every
both either neither one two three four five six seven eight nine ten hundred thousand once
""".split()

PHRASES = [
    "You are a helpful assistant.",
    "Describe what happens in this video in one or two sentences.",
    "Describe this image.",
    "What is happening in the scene?",
    "Is there a person in the video? Answer yes or no.",
    "Answer with a JSON object.",
    '{"answer": "yes", "reason": "a person is visible"}',
    "A red square moves from the left to the right of the frame.",
    "The camera shows a street with parked cars and people walking.",
    "Nothing unusual happens; the scene stays calm.",
]

_TEMPLATES = [
    "{D} {a} {n} {v} {p} the {n2}.",
    "{D} {n} {v} {p} {d} {a} {n2} {p2} the {n3}.",
    "In the {n}, {d} {a} {n2} {v} {p} {d2} {n3}.",
    "{D} {a} {n} and {d} {a2} {n2} {v} {p} the {n3}, then {v2}.",
    "There is {d} {a} {n} {p} the {n2}, and it {v}.",
    "Is there {d} {n} {p} the {n2}? {Y}.",
    "At {h}:{m}, {d} {n} {v} {p} the {n2} ({k} {n3}s).",
    "{D} {n}'s {n2} {v} {p} the {a} {n3}; the {n4} {v2}.",
]


def corpus(seed: int = 0, sentences: int = 6000) -> list[str]:
    """Seeded lines of text: the word lists (plain and capitalised), phrases, and sentences."""
    rng = random.Random(seed)
    lines = [" ".join(NOUNS), " ".join(ADJECTIVES), " ".join(VERBS), " ".join(FUNCTION_WORDS)]
    lines += [" ".join(word.capitalize() for word in words) for words in (NOUNS, ADJECTIVES, VERBS, FUNCTION_WORDS)]
    lines += [" ".join(w + "s" for w in NOUNS), " ".join(w + "ly" for w in ADJECTIVES)]
    lines += PHRASES * 20
    dets = ["a", "the", "one", "another", "some", "every", "that", "this"]
    preps = ["in", "on", "at", "near", "behind", "across", "along", "into", "through", "towards", "past", "under"]
    for _ in range(sentences):
        template = rng.choice(_TEMPLATES)
        fields = {
            "d": rng.choice(dets), "d2": rng.choice(dets), "a": rng.choice(ADJECTIVES), "a2": rng.choice(ADJECTIVES),
            "n": rng.choice(NOUNS), "n2": rng.choice(NOUNS), "n3": rng.choice(NOUNS), "n4": rng.choice(NOUNS),
            "v": rng.choice(VERBS), "v2": rng.choice(VERBS), "p": rng.choice(preps), "p2": rng.choice(preps),
            "h": f"{rng.randrange(24):02d}", "m": f"{rng.randrange(60):02d}", "k": rng.randrange(1, 100),
            "Y": rng.choice(["Yes", "No"]),
        }
        fields["D"] = fields["d"].capitalize()
        line = template.format(**fields)
        if rng.random() < 0.1:  # some multi-line text, as prompts have
            line += "\n" + rng.choice(PHRASES)
        lines.append(line)
    return lines
