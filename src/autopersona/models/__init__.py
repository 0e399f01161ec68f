"""Value-tier models of commerce customers (design §4, paper 001).

``clv`` (BG/NBD and Gamma-Gamma lifetime value), ``rules`` (frequent itemsets and
association rules), ``rfm`` (recency, frequency, monetary scores and named tiers) and the
analyst commands in ``cli``.
"""
