"""Placeholder until its router is built."""

from fastapi import APIRouter

router = APIRouter()
