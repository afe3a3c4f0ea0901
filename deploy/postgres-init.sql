-- Runs once, when the database volume is first created: the pgvector extension memvid-mcp's
-- team engine needs (it also tries CREATE EXTENSION itself, which needs this privilege).
CREATE EXTENSION IF NOT EXISTS vector;
