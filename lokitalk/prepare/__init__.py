"""The prepare step: turn a talking-head video into a training dataset."""
