"""AFM Inspector: a first page that trains a small AFM on the bundled sample (CPU)."""

import pandas as pd
import streamlit as st

from afm.data import load_dataset
from afm.models import ModelConfig, build_model
from afm.train import TrainConfig, seed_everything, train_model

st.set_page_config(page_title="AFM Inspector", layout="wide")
st.title("AFM Inspector")
st.write("Attentional Factorization Machines (Xiao et al., IJCAI 2017): train on the bundled synthetic sample.")

data = load_dataset("sample")
st.json(data.summary(), expanded=False)
if st.button("Train a small AFM on the sample"):
    seed_everything(0)
    model = build_model(ModelConfig(model="afm", num_features=data.schema.num_features,
                                    num_fields=data.schema.num_fields, embedding_dim=16, attention_dim=16))
    result = train_model(model, data, TrainConfig(epochs=10, lr=0.2, batch_size=128, l2_attention=0.0))
    history = pd.DataFrame(result.history).set_index("epoch")
    st.line_chart(history[["valid_rmse", "test_rmse"]])
    st.success(f"best epoch {result.best_epoch}: valid RMSE {result.best['valid_rmse']:.4f}")
