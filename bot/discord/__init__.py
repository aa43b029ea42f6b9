"""The Discord adapter: discord.py events and slash commands translated to the brain's API.

The bot reads message text, which Discord treats as a privileged intent: enable "Message Content
Intent" for the application in the developer portal, or Discord refuses the connection.
"""
