"""Active learning: ranking tasks ordered by the reward model's uncertainty about them."""
