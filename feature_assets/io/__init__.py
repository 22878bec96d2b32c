"""Reading and writing, no Dagster: the source readers (pymysql, Arrow), the daily Parquet
storage, the synthetic race data of the demo, `read_features`."""
