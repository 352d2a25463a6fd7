"""The dashboard (`mlsd ui`): a whole system on one page, read from its workspace."""
