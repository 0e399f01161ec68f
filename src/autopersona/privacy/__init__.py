"""Privacy: differential privacy, federated training, pseudonyms, consent, retention and erasure.

``dp``
    OpenDP releases of aggregate reports and the per-dataset privacy budget ledger.
``federated``
    Vertical federated training (Flower) of an L4 model across four parties: people
    consenting to partner sharing only, exact secure aggregation of the parties' scores.
``pseudo``
    Keyed-HMAC pseudonyms, the audited re-identification table, H3 coarsening.
``consent``
    Consent per person, purpose and channel, with history.
``erase``
    Retention per table and erasure of a person from every table of every backend.
"""
