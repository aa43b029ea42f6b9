"""The Telegram adapter: python-telegram-bot events in, platform-neutral commands and brain chats out."""
