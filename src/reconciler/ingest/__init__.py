"""The boundary where producers' bytes become facts or dead letters."""
