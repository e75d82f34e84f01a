"""`batchrun ui`: a local dashboard of the runs directories under a folder, live, with no account and no network.

`server` serves it (tornado, the `ui` extra) and keeps watched sweeps fresh;
`handlers` decides who may ask and what is served; `registry` finds the runs
directories and sums each up; `watch` keeps each sweep's document and what
changed in it; `api` answers the pages' questions; `static/` holds the
pages' own JavaScript and CSS (plotly's comes from the plotly package, the
sweep's drawing from `results/static/`). Imported only by `batchrun ui`.
"""
