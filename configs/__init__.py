"""Named presets (TOML) shipped with the package."""
