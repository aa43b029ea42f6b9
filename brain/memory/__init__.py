"""What the brain remembers of a member beyond the recent turns of one chat.

- facts.py:   facts about the member (pinned with /remember, or extracted from what they say), and which of
              their facts and earlier turns may reach a prompt in a given chat;
- recall.py:  a small BM25 ranker over the member's own earlier turns (lexical: no model, nothing downloaded);
- context.py: what one prompt gets: the visible facts, and the earlier turns that match the new message;
- extract.py: facts picked out of a member's messages by the model, in the background.

The keys themselves live in brain/store.py, like every other key.
"""
