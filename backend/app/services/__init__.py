"""Business logic; no FastAPI imports here."""
