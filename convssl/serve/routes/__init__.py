"""The HTTP routes, one `APIRouter` per audience: chat (users), agent (people), pages, health."""
