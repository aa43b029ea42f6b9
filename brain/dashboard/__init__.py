"""The operator's dashboard, served by the brain at /dashboard when OWNCHAT_OPERATOR_KEY is set (router.py)."""
