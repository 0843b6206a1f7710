"""What a sweep shows: the results table and plots (`report`), the HTML report (`html_report`), MLflow runs
(`tracking`).
"""
