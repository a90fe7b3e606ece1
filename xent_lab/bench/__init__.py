"""`make bench`: performance figures as ratios measured side by side (`python -m xent_lab.bench`)."""
