"""GA4GH Task Execution Service (TES v1.1): tasks run as analyses in the sandbox."""
