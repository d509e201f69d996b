"""Optimizers and their schedules: Muon (+ MuonEq-R), lr/momentum schedules, EMA/SWA weight averages."""
