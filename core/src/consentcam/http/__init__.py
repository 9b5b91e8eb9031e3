"""The HTTP edge: the application factory, the operations of the JSON API and their handlers."""
