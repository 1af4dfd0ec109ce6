"""Proto message -> object builders (TF OD API `builders/`); the entry point is `model_builder.build_model`."""
