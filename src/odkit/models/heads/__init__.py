"""SSD box predictors: weight_shared.py (WeightSharedConvolutionalBoxPredictor), convolutional.py."""
