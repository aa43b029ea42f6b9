"""One feature per cog: chat, persona, consent and data, admin."""
