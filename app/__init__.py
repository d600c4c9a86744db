"""The web application and the job records of the RLHF loop. Never imports torch."""
