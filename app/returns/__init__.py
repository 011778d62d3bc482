"""Returns and refunds: RMA codes, eligibility, the staff steps and the order timeline."""
