"""Training the reader (`nlpipe train`): SQuAD examples, cached LM features, the head's training
loop with article-level cross-validation."""
