"""What a config may hold: the CLI's own groups (``settings``) and the allow-list of classes a config may build (``trust``)."""
