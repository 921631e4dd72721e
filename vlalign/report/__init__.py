"""What a person looks at after a run: the summary, the plots and the HTML page."""
