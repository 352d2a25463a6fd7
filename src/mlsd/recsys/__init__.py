"""Recommendation (step 3's funnel): interactions, candidate generators and their offline
evaluation over the whole catalogue.

- :mod:`mlsd.recsys.interactions`: an interactions table as a sparse user x item matrix,
  and the per-user splits that published results use.
- :mod:`mlsd.recsys.generators`: popularity, item-item cosine, EASE and matrix factorisation
  (``implicit``'s ALS and BPR), each scoring every item for a batch of users.
- :mod:`mlsd.recsys.evaluate`: each user's top items with what they already have masked, and
  the ranking metrics of the registry (:mod:`mlsd.evaluation.metrics`) on them.
"""
