"""Everything that shows a run to a person."""
