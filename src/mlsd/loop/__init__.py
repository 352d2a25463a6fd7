"""Step 9, the loop: retrain triggers, fresh data, the champion/challenger gate, promotion.

``mlsd.loop.retrain.retrain`` runs one retrain; ``mlsd.loop.triggers.evaluate`` says which
triggers hold; ``mlsd.loop.lock.retrain_lock`` keeps two retrains from running at once.
"""
