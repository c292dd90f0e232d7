"""The synthetic content and the annotator accounts of the load test.

Imported by the other bench.loadtest modules.
"""

PASSWORD = "bench-password-8c1f"
USER_PREFIX = "bench-user-"

# Synthetic content: settings and actions of mixed moral valence, so that the zero-shot
# scorer gives a spread of scores and the flow sees both agreements and disagreements.
SETTINGS = [
    "a child crossing a busy street", "an elderly man at a bus stop", "a crowded supermarket checkout",
    "a dog tied outside a cafe", "a student taking an exam", "a hospital waiting room",
    "a wallet lying on the pavement", "a homeless woman asking for change", "a football match in a park",
    "a colleague's unlocked laptop", "a toddler near a swimming pool", "a car accident on a highway",
    "a classroom with a bullied boy", "a queue at a ticket office", "a beach with a drowning swimmer",
    "a shop with an unattended till", "a friend's birthday party", "a lost tourist with a map",
    "a neighbour's garden at night", "a river next to a factory", "a library reading room",
    "a pregnant woman on a crowded train", "a cat stuck in a tree", "an office meeting",
]
ACTIONS = [
    "holding the person's hand to help them", "calling an ambulance", "offering a seat",
    "giving back what was lost", "sharing food", "reporting the danger to the police",
    "taking a photo and walking away", "ignoring everything and scrolling on a phone",
    "shouting insults", "stealing the money", "pushing someone out of the way",
    "cheating by copying the answers", "lying about what happened", "laughing at the victim",
    "throwing rubbish on the ground", "kicking the animal", "reading the private messages",
    "helping to carry the bags", "explaining the way politely", "waiting patiently in line",
    "cutting in front of everyone", "pouring chemicals into the water", "pulling the person to safety",
    "comforting the crying child", "filming the scene for social media", "taking the last item for oneself",
    "returning the extra change", "leaving without paying", "asking if everyone is all right",
    "spreading a rumour about them", "feeding the animal", "blocking the exit",
]

