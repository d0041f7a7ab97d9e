"""Monitoring aggregates: what each model version sees and answers, day by day, how far its
input drifts from the reference captured at validation, and how often the site's final
reports agree with it."""
