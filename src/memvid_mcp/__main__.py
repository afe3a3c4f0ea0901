"""``python -m memvid_mcp`` runs the CLI (and, with no command, the stdio MCP server)."""

from memvid_mcp.cli import main

main()
