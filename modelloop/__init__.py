"""The model in the loop: model versions, predictions, the scorers and the tasks that score pairs.

annotation may import ``modelloop.selectors`` and ``modelloop.services`` (research also ``models``); training any of it.
"""
