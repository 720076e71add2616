"""Formatting helpers shared by the Jinja2 environment and the admin."""


def filesizeformat_binary(value) -> str:
    """Bytes as people read them in this programme: 1.2 GB, 2.0 PB (powers of 1024, one decimal)."""
    if value is None:
        return ""
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if abs(size) < 1024 or unit == "PB":
            return f"{int(size):,} bytes" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} PB"
