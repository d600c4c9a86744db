"""The web application and the job records of the RLHF loop. Never imports torch."""

# Register every table before any mapper is configured (relationships resolve by name).
import app.models  # noqa: F401
