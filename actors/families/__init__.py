"""Model families: one small module each, registered in actors.registry."""
