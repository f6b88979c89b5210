"""The long-running service: Kafka in, the PostgreSQL log in between, Kafka out."""
