"""Branch status: every branch against the default branch and against its upstream."""
