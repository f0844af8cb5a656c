"""pandas over stored runs: load results, judge them against the expectations, report them."""
