"""The flows: checkout as a TCC, the other sale-day flows, and the reactions that finish
them; written against the `Gateway` protocol (`flows.gateway`)."""
