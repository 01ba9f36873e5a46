"""Write the package's own data set, ``icm_plugin/data/facts.jsonl``.

Short factual True/False claims that a small base LM (Gemma-3-270M) may know. Each question has two
candidate answers, exactly one true; the false one is of the same type (another real capital, another
continent, another animal class, ...). Every record:

    id, question, choice, label (gold, evaluation only), consistency_id, consistency_key, category

Nothing but the facts themselves may predict the label:

* both candidates of a question are worded with the same template, and each of the four templates
  (``bare`` answer, ``answer`` "The answer is X.", ``short`` "It is X.", ``full`` statement) is used for
  true and false candidates equally often;
* which candidate comes first is drawn by a fixed-seed RNG from a balanced list, jointly with the
  template, so the true one is first in half the groups (to within one);
* ids are ``facts-<question id>-a`` / ``-b`` in file order.

Deterministic: re-running it writes the identical file. Run from anywhere::

    python scripts/make_facts.py            # write the file, print the tables
    python scripts/make_facts.py --check    # fail if the file differs from what would be written
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

SEED = 20240607
OUTPUT = Path(__file__).resolve().parent.parent / "icm_plugin" / "data" / "facts.jsonl"
TEMPLATES = ("bare", "answer", "short", "full")


class Fact(NamedTuple):
    category: str
    cid: str  # question id = consistency_id
    question: str
    full: str  # full statement with {ans}
    true: str
    false: str
    short: str = "It is {ans}."


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _slug(text: str) -> str:
    text = text.removeprefix("the ")
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


# ---------------------------------------------------------------------------------------------------------
# The fact table. Every false candidate is definitely false; every true one is the standard answer.

# (country as used in a sentence, capital, distractor). Distractors are other capitals of this table,
# swapped between neighbours, so every capital appears once as a true and once as a false candidate.
CAPITALS = [
    ("France", "Paris", "Brussels"),
    ("Belgium", "Brussels", "Paris"),
    ("Germany", "Berlin", "Vienna"),
    ("Austria", "Vienna", "Berlin"),
    ("Spain", "Madrid", "Lisbon"),
    ("Portugal", "Lisbon", "Madrid"),
    ("the United Kingdom", "London", "Dublin"),
    ("Ireland", "Dublin", "London"),
    ("Sweden", "Stockholm", "Oslo"),
    ("Norway", "Oslo", "Stockholm"),
    ("Finland", "Helsinki", "Copenhagen"),
    ("Denmark", "Copenhagen", "Helsinki"),
    ("Italy", "Rome", "Athens"),
    ("Greece", "Athens", "Rome"),
    ("Poland", "Warsaw", "Moscow"),
    ("Russia", "Moscow", "Warsaw"),
    ("Hungary", "Budapest", "Prague"),
    ("the Czech Republic", "Prague", "Budapest"),
    ("China", "Beijing", "Tokyo"),
    ("Japan", "Tokyo", "Seoul"),
    ("South Korea", "Seoul", "Beijing"),
    ("India", "New Delhi", "Islamabad"),
    ("Pakistan", "Islamabad", "New Delhi"),
    ("Thailand", "Bangkok", "Hanoi"),
    ("Vietnam", "Hanoi", "Bangkok"),
    ("Turkey", "Ankara", "Tehran"),
    ("Iran", "Tehran", "Riyadh"),
    ("Saudi Arabia", "Riyadh", "Ankara"),
    ("the United States", "Washington, D.C.", "Ottawa"),
    ("Canada", "Ottawa", "Washington, D.C."),
    ("Mexico", "Mexico City", "Havana"),
    ("Cuba", "Havana", "Mexico City"),
    ("Brazil", "Brasilia", "Buenos Aires"),
    ("Argentina", "Buenos Aires", "Brasilia"),
    ("Peru", "Lima", "Santiago"),
    ("Chile", "Santiago", "Lima"),
    ("Colombia", "Bogota", "Caracas"),
    ("Venezuela", "Caracas", "Bogota"),
    ("Egypt", "Cairo", "Rabat"),
    ("Morocco", "Rabat", "Cairo"),
    ("Kenya", "Nairobi", "Addis Ababa"),
    ("Ethiopia", "Addis Ababa", "Nairobi"),
    ("Nigeria", "Abuja", "Accra"),
    ("Ghana", "Accra", "Abuja"),
    ("Australia", "Canberra", "Wellington"),
    ("New Zealand", "Wellington", "Canberra"),
]

# (country, continent, distractor). No transcontinental countries; no distractor continent where the
# country holds territory. Distractors are spread so each continent is false about as often as true.
CONTINENTS = [
    ("Brazil", "South America", "Africa"),
    ("Argentina", "South America", "Europe"),
    ("Chile", "South America", "North America"),
    ("Peru", "South America", "Asia"),
    ("Colombia", "South America", "North America"),
    ("Canada", "North America", "Europe"),
    ("Mexico", "North America", "South America"),
    ("the United States", "North America", "Europe"),
    ("Kenya", "Africa", "Asia"),
    ("Nigeria", "Africa", "South America"),
    ("Ghana", "Africa", "South America"),
    ("Ethiopia", "Africa", "Asia"),
    ("Morocco", "Africa", "Europe"),
    ("Tanzania", "Africa", "Asia"),
    ("Japan", "Asia", "Europe"),
    ("China", "Asia", "Europe"),
    ("Mongolia", "Asia", "Europe"),
    ("India", "Asia", "Africa"),
    ("Pakistan", "Asia", "Africa"),
    ("Thailand", "Asia", "Africa"),
    ("Vietnam", "Asia", "South America"),
    ("Germany", "Europe", "Asia"),
    ("Poland", "Europe", "Asia"),
    ("Italy", "Europe", "Asia"),
    ("Norway", "Europe", "North America"),
    ("Sweden", "Europe", "Africa"),
    ("Hungary", "Europe", "Africa"),
    ("Portugal", "Europe", "South America"),
]

# (animal with article, class, distractor)
ANIMAL_CLASSES = [
    ("a whale", "a mammal", "a fish"),
    ("a dolphin", "a mammal", "a fish"),
    ("a bat", "a mammal", "a bird"),
    ("a kangaroo", "a mammal", "a bird"),
    ("a salmon", "a fish", "an amphibian"),
    ("a shark", "a fish", "a mammal"),
    ("a penguin", "a bird", "a mammal"),
    ("an ostrich", "a bird", "a mammal"),
    ("an eagle", "a bird", "a mammal"),
    ("an owl", "a bird", "a mammal"),
    ("a snake", "a reptile", "an amphibian"),
    ("a crocodile", "a reptile", "an amphibian"),
    ("a turtle", "a reptile", "an amphibian"),
    ("a frog", "an amphibian", "a reptile"),
    ("a salamander", "an amphibian", "a reptile"),
    ("a toad", "an amphibian", "a reptile"),
    ("an ant", "an insect", "an arachnid"),
    ("a bee", "an insect", "a bird"),
    ("a butterfly", "an insect", "a bird"),
    ("a spider", "an arachnid", "an insect"),
    ("a scorpion", "an arachnid", "an insect"),
]

# (food as used in a question, true, false)
FRUIT_VEG = [
    ("an apple", "a fruit", "a vegetable"),
    ("a banana", "a fruit", "a vegetable"),
    ("an orange", "a fruit", "a vegetable"),
    ("a grape", "a fruit", "a vegetable"),
    ("a pear", "a fruit", "a vegetable"),
    ("a cherry", "a fruit", "a vegetable"),
    ("a strawberry", "a fruit", "a vegetable"),
    ("a carrot", "a vegetable", "a fruit"),
    ("a potato", "a vegetable", "a fruit"),
    ("an onion", "a vegetable", "a fruit"),
    ("a cabbage", "a vegetable", "a fruit"),
    ("broccoli", "a vegetable", "a fruit"),
    ("spinach", "a vegetable", "a fruit"),
    ("lettuce", "a vegetable", "a fruit"),
]

# (substance, state at room temperature, distractor)
STATES = [
    ("iron", "a solid", "a liquid"),
    ("gold", "a solid", "a liquid"),
    ("table salt", "a solid", "a gas"),
    ("sugar", "a solid", "a gas"),
    ("mercury", "a liquid", "a solid"),
    ("water", "a liquid", "a gas"),
    ("milk", "a liquid", "a solid"),
    ("olive oil", "a liquid", "a solid"),
    ("oxygen", "a gas", "a liquid"),
    ("helium", "a gas", "a liquid"),
    ("nitrogen", "a gas", "a solid"),
    ("carbon dioxide", "a gas", "a solid"),
]

# (element, symbol, distractor symbol: always a real symbol of another element)
SYMBOLS = [
    ("gold", "Au", "Ag"),
    ("silver", "Ag", "Au"),
    ("iron", "Fe", "Ir"),
    ("sodium", "Na", "S"),
    ("potassium", "K", "P"),
    ("oxygen", "O", "N"),
    ("hydrogen", "H", "He"),
    ("helium", "He", "H"),
    ("carbon", "C", "Ca"),
    ("copper", "Cu", "Co"),
    ("lead", "Pb", "Sn"),
]

# (substance, formula, distractor formula)
FORMULAS = [
    ("water", "H2O", "CO2"),
    ("carbon dioxide", "CO2", "CO"),
    ("table salt", "NaCl", "KCl"),
]

# (country, main language, distractor)
LANGUAGES = [
    ("Brazil", "Portuguese", "Spanish"),
    ("Mexico", "Spanish", "Portuguese"),
    ("Argentina", "Spanish", "Italian"),
    ("Portugal", "Portuguese", "Spanish"),
    ("Spain", "Spanish", "Portuguese"),
    ("France", "French", "German"),
    ("Germany", "German", "Dutch"),
    ("the Netherlands", "Dutch", "German"),
    ("Italy", "Italian", "French"),
    ("Japan", "Japanese", "Chinese"),
    ("China", "Chinese", "Japanese"),
    ("South Korea", "Korean", "Chinese"),
    ("Russia", "Russian", "Polish"),
    ("Poland", "Polish", "Russian"),
    ("Egypt", "Arabic", "Persian"),
    ("Iran", "Persian", "Arabic"),
    ("Greece", "Greek", "Turkish"),
    ("Turkey", "Turkish", "Greek"),
    ("Sweden", "Swedish", "Norwegian"),
    ("Norway", "Norwegian", "Swedish"),
]

# Free-form facts (question id = category-slug): (category, slug, question, full statement, true, false[, short statement]).
OTHER: list[tuple[str, ...]] = [
    # animals
    ("animals", "tallest-animal", "What is the tallest animal?", "The tallest animal is {ans}.",
     "the giraffe", "the elephant"),
    ("animals", "largest-animal", "What is the largest animal alive today?",
     "The largest animal alive today is {ans}.", "the blue whale", "the African elephant"),
    ("animals", "fastest-land-animal", "What is the fastest land animal?", "The fastest land animal is {ans}.",
     "the cheetah", "the lion"),
    ("animals", "caterpillar", "What do caterpillars turn into?", "Caterpillars turn into {ans}.",
     "butterflies or moths", "beetles", "They turn into {ans}."),
    ("animals", "tadpole", "What do tadpoles grow into?", "Tadpoles grow into {ans}.",
     "frogs or toads", "fish", "They grow into {ans}."),
    # materials
    ("materials", "paper", "What is paper mainly made from?", "Paper is mainly made from {ans}.", "wood", "sand",
     "It is made from {ans}."),
    ("materials", "glass", "What is glass mainly made from?", "Glass is mainly made from {ans}.", "sand", "wood",
     "It is made from {ans}."),
    ("materials", "cheese", "What is cheese made from?", "Cheese is made from {ans}.", "milk", "eggs",
     "It is made from {ans}."),
    ("materials", "butter", "What is butter made from?", "Butter is made from {ans}.", "cream", "olives",
     "It is made from {ans}."),
    ("materials", "olive-oil", "What is olive oil made from?", "Olive oil is made from {ans}.", "olives",
     "sunflower seeds", "It is made from {ans}."),
    ("materials", "chocolate", "What is chocolate made from?", "Chocolate is made from {ans}.", "cocoa beans",
     "coffee beans", "It is made from {ans}."),
    ("materials", "bread", "What is bread mainly made from?", "Bread is mainly made from {ans}.", "flour",
     "sugar", "It is made from {ans}."),
    ("materials", "steel", "Which metal is steel mainly made of?", "Steel is mainly made of {ans}.", "iron",
     "copper", "It is made of {ans}."),
    ("materials", "wool", "Which animal does most wool come from?", "Most wool comes from {ans}.", "sheep",
     "cows", "It comes from {ans}."),
    ("materials", "pencil", "What is the core of a modern pencil made of?",
     "The core of a modern pencil is made of {ans}.", "graphite", "lead", "It is made of {ans}."),
    # space
    ("space", "closest-planet-sun", "Which planet is closest to the Sun?", "The planet closest to the Sun is {ans}.",
     "Mercury", "Venus"),
    ("space", "largest-planet", "Which is the largest planet in the Solar System?",
     "The largest planet in the Solar System is {ans}.", "Jupiter", "Saturn"),
    ("space", "red-planet", "Which planet is known as the Red Planet?", "The Red Planet is {ans}.", "Mars", "Venus"),
    ("space", "ringed-planet", "Which planet is famous for its large, bright rings?",
     "The planet famous for its large, bright rings is {ans}.", "Saturn", "Mars"),
    ("space", "farthest-planet", "Which planet is farthest from the Sun?", "The planet farthest from the Sun is {ans}.",
     "Neptune", "Uranus"),
    ("space", "third-planet", "Which planet is third from the Sun?", "The third planet from the Sun is {ans}.",
     "Earth", "Venus"),
    ("space", "hottest-planet", "Which planet has the hottest surface?", "The planet with the hottest surface is {ans}.",
     "Venus", "Mercury"),
    ("space", "number-of-planets", "How many planets are there in the Solar System?",
     "The Solar System has {ans} planets.", "8", "9", "There are {ans}."),
    ("space", "closest-star", "What is the closest star to Earth?", "The closest star to Earth is {ans}.",
     "the Sun", "Polaris"),
    ("space", "earth-satellite", "What is Earth's natural satellite?", "Earth's natural satellite is {ans}.",
     "the Moon", "Titan"),
    ("space", "earth-orbits", "What does the Earth orbit?", "The Earth orbits {ans}.", "the Sun", "the Moon",
     "It orbits {ans}."),
    ("space", "earth-year", "How long does the Earth take to go once around the Sun?",
     "The Earth takes {ans} to go once around the Sun.", "about one year", "about one month", "It takes {ans}."),
    # science
    ("science", "water-boils", "At what temperature does water boil at sea level?",
     "At sea level, water boils at {ans}.", "100 degrees Celsius", "90 degrees Celsius", "It boils at {ans}."),
    ("science", "water-freezes", "At what temperature does water freeze?", "Water freezes at {ans}.",
     "0 degrees Celsius", "10 degrees Celsius", "It freezes at {ans}."),
    ("science", "photosynthesis-gas", "Which gas do plants take in from the air to make food?",
     "Plants take in {ans} from the air to make food.", "carbon dioxide", "oxygen"),
    ("science", "breathing-gas", "Which gas do humans need to breathe in to stay alive?",
     "Humans need to breathe in {ans} to stay alive.", "oxygen", "carbon dioxide"),
    ("science", "air-main-gas", "Which gas makes up most of the Earth's air?",
     "Most of the Earth's air is {ans}.", "nitrogen", "oxygen"),
    ("science", "gravity", "What force pulls objects down towards the ground?",
     "The force that pulls objects down towards the ground is {ans}.", "gravity", "magnetism"),
    ("science", "hardest-substance", "What is the hardest natural substance?",
     "The hardest natural substance is {ans}.", "diamond", "quartz"),
    ("science", "diamond-element", "Which element is a diamond made of?", "A diamond is made of {ans}.",
     "carbon", "silicon", "It is made of {ans}."),
    ("science", "light-or-sound", "Which travels faster, light or sound?", "Of light and sound, {ans} travels faster.",
     "light", "sound", "It is {ans} that travels faster."),
    # human body
    ("human-body", "pumps-blood", "Which organ pumps blood around the body?",
     "The organ that pumps blood around the body is {ans}.", "the heart", "the liver"),
    ("human-body", "breathing-organ", "Which organs do we use to breathe?", "We use {ans} to breathe.",
     "the lungs", "the kidneys", "They are {ans}."),
    ("human-body", "largest-organ", "What is the largest organ of the human body?",
     "The largest organ of the human body is {ans}.", "the skin", "the liver"),
    ("human-body", "thinking-organ", "Which organ do we think with?", "We think with {ans}.", "the brain",
     "the heart"),
    ("human-body", "blood-colour", "What colour is human blood?", "Human blood is {ans}.", "red", "blue"),
    # colours
    ("colours", "sky", "What colour is the sky on a clear day?", "On a clear day the sky is {ans}.", "blue",
     "green"),
    ("colours", "grass", "What colour is healthy grass?", "Healthy grass is {ans}.", "green", "blue"),
    ("colours", "snow", "What colour is fresh snow?", "Fresh snow is {ans}.", "white", "black"),
    ("colours", "coal", "What colour is coal?", "Coal is {ans}.", "black", "white"),
    ("colours", "milk", "What colour is fresh milk?", "Fresh milk is {ans}.", "white", "green"),
    ("colours", "blue-yellow", "What colour do you get when you mix blue and yellow paint?",
     "Mixing blue and yellow paint gives {ans}.", "green", "orange"),
    ("colours", "red-yellow", "What colour do you get when you mix red and yellow paint?",
     "Mixing red and yellow paint gives {ans}.", "orange", "purple"),
    ("colours", "red-blue", "What colour do you get when you mix red and blue paint?",
     "Mixing red and blue paint gives {ans}.", "purple", "orange"),
    ("colours", "red-white", "What colour do you get when you mix red and white paint?",
     "Mixing red and white paint gives {ans}.", "pink", "grey"),
    # geography
    ("geography", "largest-ocean", "What is the largest ocean on Earth?", "The largest ocean on Earth is {ans}.",
     "the Pacific Ocean", "the Atlantic Ocean"),
    ("geography", "ocean-europe-america", "Which ocean lies between Europe and North America?",
     "The ocean between Europe and North America is {ans}.", "the Atlantic Ocean", "the Indian Ocean"),
    ("geography", "highest-mountain", "What is the highest mountain on Earth?",
     "The highest mountain on Earth is {ans}.", "Mount Everest", "K2"),
    ("geography", "largest-hot-desert", "What is the largest hot desert in the world?",
     "The largest hot desert in the world is {ans}.", "the Sahara", "the Kalahari"),
    ("geography", "sahara-continent", "On which continent is the Sahara Desert?", "The Sahara Desert is in {ans}.",
     "Africa", "Asia", "It is in {ans}."),
    ("geography", "largest-continent", "What is the largest continent?", "The largest continent is {ans}.", "Asia",
     "Africa"),
    ("geography", "smallest-continent", "What is the smallest continent?", "The smallest continent is {ans}.",
     "Australia", "Europe"),
    ("geography", "largest-country", "What is the largest country in the world by area?",
     "The largest country in the world by area is {ans}.", "Russia", "Canada"),
    ("geography", "largest-south-american-country", "What is the largest country in South America?",
     "The largest country in South America is {ans}.", "Brazil", "Argentina"),
    ("geography", "largest-us-state", "Which US state is the largest by area?",
     "The largest US state by area is {ans}.", "Alaska", "Texas"),
    ("geography", "largest-island", "What is the largest island in the world?",
     "The largest island in the world is {ans}.", "Greenland", "Madagascar"),
    ("geography", "longest-river-europe", "What is the longest river in Europe?",
     "The longest river in Europe is {ans}.", "the Volga", "the Danube"),
    ("geography", "largest-lake-africa", "What is the largest lake in Africa?", "The largest lake in Africa is {ans}.",
     "Lake Victoria", "Lake Tanganyika"),
    ("geography", "sea-europe-africa", "Which sea lies between Europe and Africa?",
     "The sea between Europe and Africa is {ans}.", "the Mediterranean Sea", "the Red Sea"),
    ("geography", "river-london", "Which river flows through London?", "The river that flows through London is {ans}.",
     "the Thames", "the Seine"),
    ("geography", "river-paris", "Which river flows through Paris?", "The river that flows through Paris is {ans}.",
     "the Seine", "the Thames"),
    ("geography", "river-cairo", "Which river flows through Cairo?", "The river that flows through Cairo is {ans}.",
     "the Nile", "the Niger"),
    ("geography", "river-rome", "Which river flows through Rome?", "The river that flows through Rome is {ans}.",
     "the Tiber", "the Po"),
    ("geography", "river-budapest", "Which river flows through Budapest?",
     "The river that flows through Budapest is {ans}.", "the Danube", "the Rhine"),
    # landmarks
    ("landmarks", "eiffel-tower", "In which city is the Eiffel Tower?", "The Eiffel Tower is in {ans}.", "Paris",
     "Rome", "It is in {ans}."),
    ("landmarks", "colosseum", "In which city is the Colosseum?", "The Colosseum is in {ans}.", "Rome", "Athens",
     "It is in {ans}."),
    ("landmarks", "acropolis", "In which city is the Acropolis?", "The Acropolis is in {ans}.", "Athens", "Rome",
     "It is in {ans}."),
    ("landmarks", "big-ben", "In which city is Big Ben?", "Big Ben is in {ans}.", "London", "Paris",
     "It is in {ans}."),
    ("landmarks", "statue-of-liberty", "In which country is the Statue of Liberty?",
     "The Statue of Liberty is in {ans}.", "the United States", "France", "It is in {ans}."),
    ("landmarks", "taj-mahal", "In which country is the Taj Mahal?", "The Taj Mahal is in {ans}.", "India", "Egypt",
     "It is in {ans}."),
    ("landmarks", "great-wall", "In which country is the Great Wall?", "The Great Wall is in {ans}.", "China",
     "Japan", "It is in {ans}."),
    ("landmarks", "pyramids-of-giza", "In which country are the Pyramids of Giza?",
     "The Pyramids of Giza are in {ans}.", "Egypt", "Mexico", "They are in {ans}."),
    ("landmarks", "sydney-opera-house", "In which country is the Sydney Opera House?",
     "The Sydney Opera House is in {ans}.", "Australia", "New Zealand", "It is in {ans}."),
    # units and counting
    ("numbers", "days-week", "How many days are there in a week?", "A week has {ans} days.", "7", "6",
     "There are {ans}."),
    ("numbers", "months-year", "How many months are there in a year?", "A year has {ans} months.", "12", "10",
     "There are {ans}."),
    ("numbers", "hours-day", "How many hours are there in a day?", "A day has {ans} hours.", "24", "12",
     "There are {ans}."),
    ("numbers", "minutes-hour", "How many minutes are there in an hour?", "An hour has {ans} minutes.", "60", "100",
     "There are {ans}."),
    ("numbers", "seconds-minute", "How many seconds are there in a minute?", "A minute has {ans} seconds.", "60",
     "30", "There are {ans}."),
    ("numbers", "days-leap-year", "How many days are there in a leap year?", "A leap year has {ans} days.", "366",
     "365", "There are {ans}."),
    ("numbers", "days-common-year", "How many days are there in a year that is not a leap year?",
     "A year that is not a leap year has {ans} days.", "365", "366", "There are {ans}."),
    ("numbers", "days-february", "How many days does February have in a year that is not a leap year?",
     "In a year that is not a leap year, February has {ans} days.", "28", "30", "It has {ans}."),
    ("numbers", "weeks-year", "How many weeks are there in a year?", "A year has {ans} weeks.", "52", "48",
     "There are {ans}."),
    ("numbers", "years-decade", "How many years are there in a decade?", "A decade has {ans} years.", "10", "100",
     "There are {ans}."),
    ("numbers", "years-century", "How many years are there in a century?", "A century has {ans} years.", "100",
     "1000", "There are {ans}."),
    ("numbers", "cm-metre", "How many centimetres are there in a metre?", "A metre has {ans} centimetres.", "100",
     "1000", "There are {ans}."),
    ("numbers", "metres-km", "How many metres are there in a kilometre?", "A kilometre has {ans} metres.", "1000",
     "100", "There are {ans}."),
    ("numbers", "grams-kg", "How many grams are there in a kilogram?", "A kilogram has {ans} grams.", "1000", "100",
     "There are {ans}."),
    ("numbers", "legs-spider", "How many legs does a spider have?", "A spider has {ans} legs.", "8", "6",
     "It has {ans}."),
    ("numbers", "legs-insect", "How many legs does an insect have?", "An insect has {ans} legs.", "6", "8",
     "It has {ans}."),
    ("numbers", "legs-dog", "How many legs does a dog have?", "A dog has {ans} legs.", "4", "6", "It has {ans}."),
    ("numbers", "sides-triangle", "How many sides does a triangle have?", "A triangle has {ans} sides.", "3", "4",
     "It has {ans}."),
    ("numbers", "sides-square", "How many sides does a square have?", "A square has {ans} sides.", "4", "5",
     "It has {ans}."),
    ("numbers", "sides-hexagon", "How many sides does a hexagon have?", "A hexagon has {ans} sides.", "6", "8",
     "It has {ans}."),
    ("numbers", "sides-octagon", "How many sides does an octagon have?", "An octagon has {ans} sides.", "8", "6",
     "It has {ans}."),
    # arithmetic
    ("arithmetic", "2-plus-2", "What is 2 plus 2?", "2 plus 2 equals {ans}.", "4", "5"),
    ("arithmetic", "10-minus-3", "What is 10 minus 3?", "10 minus 3 equals {ans}.", "7", "6"),
    ("arithmetic", "3-times-4", "What is 3 times 4?", "3 times 4 equals {ans}.", "12", "14"),
    ("arithmetic", "9-times-9", "What is 9 times 9?", "9 times 9 equals {ans}.", "81", "72"),
    ("arithmetic", "half-of-10", "What is half of 10?", "Half of 10 is {ans}.", "5", "4"),
    ("arithmetic", "100-divided-by-4", "What is 100 divided by 4?", "100 divided by 4 equals {ans}.", "25", "20"),
]


def build_facts() -> list[Fact]:
    """The whole fact table, in file order."""
    facts: list[Fact] = []
    for country, capital, other in CAPITALS:
        facts.append(Fact("capitals", f"capital-{_slug(country)}", f"What is the capital of {country}?",
                          f"The capital of {country} is {{ans}}.", capital, other))
    for country, continent, other in CONTINENTS:
        facts.append(Fact("continents", f"continent-{_slug(country)}", f"On which continent is {country}?",
                          f"{_cap(country)} is in {{ans}}.", continent, other, "It is in {ans}."))
    for animal, cls, other in ANIMAL_CLASSES:
        facts.append(Fact("animal-classes", f"animal-class-{_slug(animal.split(' ', 1)[1])}",
                          f"What kind of animal is {animal}?", f"{_cap(animal)} is {{ans}}.", cls, other))
    for food, kind, other in FRUIT_VEG:
        name = food.split(" ", 1)[1] if food.startswith(("a ", "an ")) else food
        facts.append(Fact("fruit-vegetables", f"fruit-veg-{_slug(name)}", f"Is {food} a fruit or a vegetable?",
                          f"{_cap(food)} is {{ans}}.", kind, other))
    for substance, state, other in STATES:
        facts.append(Fact("states-of-matter", f"state-{_slug(substance)}",
                          f"At room temperature, is {substance} a solid, a liquid or a gas?",
                          f"At room temperature, {substance} is {{ans}}.", state, other))
    for element, symbol, other in SYMBOLS:
        facts.append(Fact("chemistry", f"symbol-{_slug(element)}", f"What is the chemical symbol for {element}?",
                          f"The chemical symbol for {element} is {{ans}}.", symbol, other))
    for substance, formula, other in FORMULAS:
        facts.append(Fact("chemistry", f"formula-{_slug(substance)}", f"What is the chemical formula for {substance}?",
                          f"The chemical formula for {substance} is {{ans}}.", formula, other))
    for country, language, other in LANGUAGES:
        facts.append(Fact("languages", f"language-{_slug(country)}", f"What is the main language spoken in {country}?",
                          f"The main language spoken in {country} is {{ans}}.", language, other,
                          "People there mostly speak {ans}."))
    for row in OTHER:
        category, slug, question, full, true, false = row[:6]
        short = row[6] if len(row) > 6 else "It is {ans}."
        facts.append(Fact(category, f"{category}-{slug}", question, full, true, false, short))
    return facts


# ---------------------------------------------------------------------------------------------------------


def render_choice(fact: Fact, answer: str, template: str) -> str:
    """The candidate claim worded with ``template``; ``bare`` is the answer itself (= consistency_key)."""
    if template == "bare":
        return answer
    pattern = {"answer": "The answer is {ans}.", "short": fact.short, "full": fact.full}[template]
    text = _cap(pattern.format(ans=answer))
    return text[:-1] if text.endswith("..") else text  # "Washington, D.C.."


def check_facts(facts: list[Fact]) -> None:
    """Structural sanity of the table (raises AssertionError)."""
    cids = [f.cid for f in facts]
    dupes = [c for c, n in Counter(cids).items() if n > 1]
    assert not dupes, f"duplicate question ids: {dupes}"
    for f in facts:
        assert f.true and f.false and f.true != f.false, f
        assert "{ans}" in f.full and "{ans}" in f.short, f
        assert f.question.endswith("?"), f
    capitals_true = sorted(c for _, c, _ in CAPITALS)
    capitals_false = sorted(o for _, _, o in CAPITALS)
    assert capitals_true == capitals_false, "every capital must appear once as true and once as false"


def build_records(seed: int = SEED) -> list[dict]:
    """All records, in file order. Deterministic for a given seed."""
    facts = build_facts()
    check_facts(facts)
    rng = random.Random(seed)
    combos = [(t, true_first) for t in TEMPLATES for true_first in (True, False)]
    plan = [combos[i % len(combos)] for i in range(len(facts))]
    rng.shuffle(plan)
    records: list[dict] = []
    for fact, (template, true_first) in zip(facts, plan, strict=True):
        candidates = [(fact.true, 1), (fact.false, 0)]
        if not true_first:
            candidates.reverse()
        for suffix, (answer, label) in zip("ab", candidates, strict=True):
            records.append({
                "id": f"facts-{fact.cid}-{suffix}",
                "question": fact.question,
                "choice": render_choice(fact, answer, template),
                "label": label,
                "consistency_id": fact.cid,
                "consistency_key": answer,
                "category": fact.category,
            })
    return records


def render_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def template_family(record: dict) -> str:
    """``bare`` when the claim is the answer alone, else ``sentence``."""
    return "bare" if record["choice"] == record["consistency_key"] else "sentence"


def _table(title: str, rows: list[str], cols: list[str], counts: Counter) -> str:
    width = max(len(c) for c in cols + ["label"]) + 2
    lines = [title, "label".ljust(8) + "".join(c.rjust(width) for c in cols)]
    for r in rows:
        lines.append(str(r).ljust(8) + "".join(str(counts[(r, c)]).rjust(width) for c in cols))
    return "\n".join(lines)


def report(records: list[dict]) -> str:
    facts = {f.cid: f for f in build_facts()}
    groups = Counter(r["consistency_id"] for r in records)
    per_cat = Counter(r["category"] for r in records)
    lines = [f"{len(records)} claims in {len(groups)} questions", "", "claims per category:"]
    for cat, n in sorted(per_cat.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {cat:<18}{n:>5}  ({n // 2} questions)")
    slot: Counter = Counter()
    templ: Counter = Counter()
    fam: Counter = Counter()
    first_seen: set[str] = set()
    for r in records:
        position = "second" if r["consistency_id"] in first_seen else "first"
        first_seen.add(r["consistency_id"])
        slot[(r["label"], position)] += 1
        fact = facts[r["consistency_id"]]
        template = next(t for t in TEMPLATES if render_choice(fact, r["consistency_key"], t) == r["choice"])
        templ[(r["label"], template)] += 1
        fam[(r["label"], template_family(r))] += 1
    lines += ["", _table("label x slot in group:", [1, 0], ["first", "second"], slot)]
    lines += ["", _table("label x template:", [1, 0], list(TEMPLATES), templ)]
    lines += ["", _table("label x template family:", [1, 0], ["bare", "sentence"], fam)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="only compare the file with what would be written")
    args = parser.parse_args(argv)
    records = build_records()
    text = render_jsonl(records)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{args.output} is out of date: run python scripts/make_facts.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {args.output}")
    print(report(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
