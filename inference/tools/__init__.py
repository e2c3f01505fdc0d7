"""The model's tools, and the Django app ``tools`` that holds the admin's tool settings and functions.

toolset.py: which tools a conversation declares and running one call (in the reply task's thread); python.py,
browser.py, net.py, functions.py: the runners, plain Python; models.py, selectors.py, admin.py: the app.
"""
