"""Jules, the co-pilot: litellm + instructor behind a small protocol; validates drafts with ``engine.dsl``.

Independent of ``ui``; reads ``prompts/``. Built in the issue "Jules, the co-pilot".
"""
