"""Quality and its uncertainty: COCO metrics (`scoring`), bootstrap intervals and ties (`statistics`),
Pareto fronts (`pareto`).
"""
