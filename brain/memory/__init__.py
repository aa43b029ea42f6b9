"""What the brain remembers of a member beyond the recent turns of one chat, as one service.

- service.py: the memory service (Runtime.memory) that the routes call: what a prompt gets, what an exchange adds,
              facts pinned and forgotten, and the background work (summary folds, fact extraction);
- records.py: its records besides the API's Turn, EarlierTurn and Fact: a chat's memory, and a generation asked
              of the model in the background (the only way memory reaches the model);
- jobs.py:    the one pattern of background jobs: started after a reply, never awaited by one, failing alone;
- facts.py:   facts about the member (pinned with /remember, or extracted from what they say), and which of
              their facts and earlier turns may reach a prompt in a given chat;
- recall.py:  a small BM25 ranker over the member's own earlier turns (lexical: no model, nothing downloaded);
- context.py: what one prompt gets: the visible facts, and the earlier turns that match the new message;
- summary.py: a chat's rolling summary: the fold's prompt, and whether a summary holds only what was said;
- extract.py: facts picked out of a member's messages by the model: the prompt, and which answers are kept.
- settings.py: the section ``memory`` of the settings (brain/settings.py composes it).

Memory imports neither the service, nor the prompt, nor the engine (tests/brain/memory/test_import_direction.py).
It reads and writes through the store's chats and facts repositories (brain/store/chats.py, facts.py); the keys
themselves are spelled in brain/store/keys.py, like every other key.
"""
