"""Google Cloud Storage (gs://bucket/prefix) as a source, through google-cloud-storage (the extra
datapool[gcs]), imported only when a gs:// source is opened."""
