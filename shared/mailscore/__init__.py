"""mailscore: score email for threats on Pub/Sub, Bigtable and XGBoost."""
