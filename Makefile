# Convenience wrappers; dev.py does the work and needs only Python 3.11+.
.PHONY: demo test lint bench
demo: ; python3 dev.py demo
test: ; python3 dev.py test
lint: ; python3 dev.py lint
bench: ; python3 dev.py bench
